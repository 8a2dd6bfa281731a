from repcali.tables import main

main()
