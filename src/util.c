/* util: being written */
