/* worker: being written */
