from etchat.cli import main

raise SystemExit(main())
