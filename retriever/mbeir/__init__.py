"""M-BEIR evaluation: UniIR's benchmark read exactly as published, scored exactly as UniIR scores it.

``data``: the folder layout, query / candidate / qrels / instruction records, UniIR's query text.
``metrics``: Recall@k as UniIR's hit rate, per (dataset, task) and averaged; TREC run files.
"""
