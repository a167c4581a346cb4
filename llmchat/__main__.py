from llmchat_tools.cli import main

main()
