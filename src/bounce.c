/* bounce: being written */
