"""A small shop built with ecopy, on SQLite through ``ecopy_dbal``: orders, stock, order
fulfilment, notifications and invoices.

Run it with ``python -m examples.shop``. The modules are what an application usually has:

* ``domain`` — the messages: commands, events and queries (dataclasses and pydantic models);
* ``orders`` — ``Order``, a state-stored aggregate (a JSON document in ``ecopy_documents``);
* ``stock`` — ``Stock``, an event-sourced aggregate (its events in ``ecopy_events``);
* ``fulfilment`` — ``OrderFulfilment``, a saga that moves each order on from its events;
* ``handlers`` — notifications and invoices, handled asynchronously through the outbox (the
  database queue ``outbox``, rows of ``ecopy_messages``), and the journal the demo prints;
* ``interceptors`` — an audit log around every command and a validation step;
* ``services`` — the price list, the mailbox and the printer the handlers are given;
* ``demo`` — bootstraps the application with ``scan=["examples.shop"]`` and tells what happens.
"""
