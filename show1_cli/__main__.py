from show1_cli.cli import main

main()
