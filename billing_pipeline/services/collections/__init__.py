"""Collections: payment reminders now (``reminders``), auto-charge and payment sync later.

``policy.load_policy(path)`` reads and validates the dunning policy YAML;
``reminders.send_payment_reminders(...)`` is one reminders run.
"""
