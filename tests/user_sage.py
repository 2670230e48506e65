"""A model as users write it outside layerscope: the OGB ogbn-products example's
``SAGE`` (snap-stanford/ogb ``examples/nodeproppred/products/gnn.py``): a
``ModuleList`` of ``SAGEConv``, ReLU and dropout between them, ``log_softmax`` at
the end. Tests train it, save its ``state_dict`` and load it back through
``layerscope embed --checkpoint --model-factory tests.user_sage:SAGE``."""

import torch
import torch.nn.functional as F
from torch_geometric.nn import SAGEConv


class SAGE(torch.nn.Module):
    def __init__(self, in_channels, hidden_channels, out_channels, num_layers, dropout):
        super().__init__()
        self.convs = torch.nn.ModuleList()
        self.convs.append(SAGEConv(in_channels, hidden_channels))
        for _ in range(num_layers - 2):
            self.convs.append(SAGEConv(hidden_channels, hidden_channels))
        self.convs.append(SAGEConv(hidden_channels, out_channels))
        self.dropout = dropout

    def reset_parameters(self):
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, x, adj_t):
        for conv in self.convs[:-1]:
            x = conv(x, adj_t)
            x = F.relu(x)
            x = F.dropout(x, p=self.dropout, training=self.training)
        x = self.convs[-1](x, adj_t)
        return torch.log_softmax(x, dim=-1)
