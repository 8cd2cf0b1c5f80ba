from insane.cli import main

raise SystemExit(main())
