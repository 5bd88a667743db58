"""``python -m meetup_ros.cli`` (and ``torchrun -m meetup_ros.cli``) runs ``meetup-ros``."""

import sys

from meetup_ros.cli import main

sys.exit(main())
