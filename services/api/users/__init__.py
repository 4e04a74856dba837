"""Users: created by admins; `telegram_id` is unique and never a credential."""
