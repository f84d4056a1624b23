from lookup.cli.main import main

raise SystemExit(main())
