"""The built-in datasets, one module each (:class:`metarec.data.source.DataSource`)."""
