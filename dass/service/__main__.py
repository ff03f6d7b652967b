"""``python -m dass.service``: run the dass service (normally JupyterHub starts it)."""

from .app import main

if __name__ == "__main__":
    main()
