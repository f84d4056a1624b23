from lookup.mockapi.server import main

main()
