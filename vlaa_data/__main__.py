from vlaa_data.cli import main

main()
