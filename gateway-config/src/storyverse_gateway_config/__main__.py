import sys

from storyverse_gateway_config.cli import main

sys.exit(main())
