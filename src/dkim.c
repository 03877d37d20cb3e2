/* dkim: being written */
