from ml_worker.temporal.worker import main

main()
