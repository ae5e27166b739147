from foobar_ref.cli import main

main()
