/* dns: being written */
