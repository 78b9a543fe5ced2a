"""python -m cnnlab: the same as the cnnlab command."""
from .cli import run

if __name__ == "__main__":
    run()
