"""``python -m redispool``: the same CLI as the ``redispool`` command."""
from .cli import main

if __name__ == "__main__":
    main()
