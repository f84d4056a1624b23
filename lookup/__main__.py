from lookup.cli import main

raise SystemExit(main())
