"""``python -m training_image.trainer``: the training image's entrypoint."""

import sys

from training_image.trainer.cli import main

if __name__ == "__main__":
    sys.exit(main())
