from dbprobe.cli import main

raise SystemExit(main())
