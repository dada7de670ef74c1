"""Web integrations of ecopy (extras ``fastapi``, ``web``); the core never imports this package.

``ecopy.web.fastapi`` runs an application inside a FastAPI app: bootstrap on startup, close
on shutdown, the buses as dependencies, ecopy's errors as HTTP answers.
"""
