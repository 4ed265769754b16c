from lfrefsr.cli.commands import main

main()
