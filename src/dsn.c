/* dsn: being written */
