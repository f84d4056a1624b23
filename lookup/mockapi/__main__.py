from lookup.mockapi.cli import main

main()
