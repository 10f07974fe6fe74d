from flowguard.cli import main

main()
