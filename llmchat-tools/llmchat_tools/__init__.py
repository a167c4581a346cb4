"""The tools on top of the house: the `llmchat` command (cli), the benchmarks (bench), the local
supervisor (`llmchat up`, local), the dev cluster, and the room clients (client, chat_cli).
They may import the library and every service; nothing imports them."""
