"""Adapters that make agent_engine the session store of agent frameworks.

Each lives in its own module behind its own extra and is imported only by the apps that use
it: `agent_engine.integrations.openai_agents` (``pip install "agent_engine[openai-agents]"``).
"""
