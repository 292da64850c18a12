"""`python -m benchmarks.gpu`: what `benchmarks/gpu.sh` runs."""

from benchmarks.gpu.cli import main

if __name__ == "__main__":
    main()
