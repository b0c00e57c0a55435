"""The SQL database: tables, connections and migrations, shared by keys, limits and usage."""
