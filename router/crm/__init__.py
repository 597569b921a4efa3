"""CRM clients: the embedded file CRM and the HTTP CRM, behind one protocol. [I/O]"""
