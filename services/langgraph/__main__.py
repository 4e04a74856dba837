"""`python -m services.langgraph`."""

from services.langgraph.main import main

main()
