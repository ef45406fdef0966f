"""The offline quality tools: labelled evaluation sets (`python -m indexer.quality.datasets`),
`indexer evaluate` and `indexer train-head`. Unlike the rest of the indexer, which is an HTTP
client of the service, they run the model in this process."""
