import sys

from lyrics_classifier.cli import main

sys.exit(main())
