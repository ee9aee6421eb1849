from agents.runner.main import main

raise SystemExit(main())
