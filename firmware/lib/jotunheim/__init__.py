"""Jotunheim's device runtime: `jotunheim.run()` starts the agent (main.py does)."""

VERSION = "0.1.0"


def run(root=""):
    """Start the agent with the files under `root` and run it for ever."""
    import asyncio
    from jotunheim.agent import Agent
    asyncio.run(Agent(root).main())
