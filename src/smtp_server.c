/* smtp_server: being written */
