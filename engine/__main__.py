from layerscope.engine.cli import main

raise SystemExit(main())
