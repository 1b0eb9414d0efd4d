from nightlake.cli import main

main()
