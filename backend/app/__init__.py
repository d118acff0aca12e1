"""Todo Chatbot backend: the FastAPI application package."""
