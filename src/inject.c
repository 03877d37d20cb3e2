/* inject: being written */
