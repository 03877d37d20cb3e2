/* smtp_parse: being written */
