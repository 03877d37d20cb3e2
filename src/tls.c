/* tls: being written */
