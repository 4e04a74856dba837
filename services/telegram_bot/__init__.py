"""The `telegram-bot` actor: the front door on Telegram (aiogram 3).

`run_actor(ctx)` in `main.py` runs it; the conversation and the
progress notifications are the shared core of `shared.chat`.
"""
