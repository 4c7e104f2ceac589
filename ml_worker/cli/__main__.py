from ml_worker.cli.main import main

main()
