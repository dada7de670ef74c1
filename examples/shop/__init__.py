"""A small shop built with ecopy: orders, stock and notifications, all in memory.

Run it with ``python -m examples.shop``. The modules are what an application usually has:

* ``domain`` — the messages: commands, events and queries (dataclasses and pydantic models);
* ``state`` — the shop's state, in memory (dicts standing in for tables);
* ``handlers`` — the classes whose methods handle the messages;
* ``interceptors`` — an audit log around every command and a validation step;
* ``demo`` — bootstraps the application with ``scan=["examples.shop"]`` and tells what happens.
"""
