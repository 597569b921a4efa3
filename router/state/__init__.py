"""Live call state stores (DESIGN §13): in-process, SQLite (the workers of one host) and
PostgreSQL (every replica), behind one StateStore protocol. [I/O]"""
