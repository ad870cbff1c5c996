"""`make demo`: a scripted WhatsApp sales conversation on agent_engine, end to end."""
