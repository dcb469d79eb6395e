from billing_pipeline.cli import main

main()
