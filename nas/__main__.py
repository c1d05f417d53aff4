from nas.cli import console_main

console_main()
